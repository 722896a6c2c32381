"""`dockyard demo`: three deploys of a bundled app on a throwaway embedded stack, narrated."""
