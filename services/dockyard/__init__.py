"""Dockyard: a deployment pipeline whose services talk only through NATS."""

__version__ = "0.1.0"
