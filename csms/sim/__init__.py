"""A charger fleet simulator: N charge points over real WebSockets against any OCPP 1.6J CSMS."""
