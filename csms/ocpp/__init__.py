"""The OCPP 1.6J gateway: transport only. Business decisions live in `csms.services`."""
