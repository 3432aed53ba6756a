"""One module per backend: metrics, logs, kubernetes, cost, control_plane, on a shared base."""
