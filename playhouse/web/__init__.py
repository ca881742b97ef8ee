"""The web app: pages, the REST API, the websocket, and what runs beside them."""
