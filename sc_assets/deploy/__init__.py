"""Deployment: profiles (local | cluster), the local cluster, the cluster benchmark."""
