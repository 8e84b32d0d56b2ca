"""Control plane: policy authority on etcd, admin API, snapshot streaming."""
