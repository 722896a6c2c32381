"""The hook-runner: predeploy, release, postdeploy (the gate),
after-switch and on-failure commands."""
