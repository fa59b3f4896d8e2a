"""Real processes for tests and demos: Envoy, etcd, kube-apiserver, istiod."""
