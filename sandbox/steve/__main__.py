from sandbox.steve.server import main

main()
