"""The contract between Dockyard's services: events, commands, subjects, manifests."""
