"""OCPP 1.6 specifics: the handlers of charger-initiated actions."""
