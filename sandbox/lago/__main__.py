from sandbox.lago.server import main

main()
