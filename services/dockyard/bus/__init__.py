"""The bus: embedded nats-server, JetStream topology, FastStream broker, dead letters, locks."""
