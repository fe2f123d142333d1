"""The daemon: the supervisor that builds every part, runs the proxy and admin apps in one
nursery, restarts a crashed child, reloads config and drains on shutdown; and systemd's
notify protocol."""
