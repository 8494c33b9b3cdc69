"""A SteVe stand-in for development and tests: SteVe's REST API (validated against its OpenAPI
document) and its OCPP 1.6J central-system endpoint, with SteVe's own transaction ids."""
