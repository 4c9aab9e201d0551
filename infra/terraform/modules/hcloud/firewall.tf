# Only HTTP(S) is open to the world; SSH and the Kubernetes API only to the operators' networks.
# Node-to-node traffic (etcd, kubelet, WireGuard) stays on the private network, which Hetzner
# Cloud firewalls do not filter.
resource "hcloud_firewall" "nodes" {
  name   = "${var.environment}-platform-nodes"
  labels = local.labels

  rule {
    description = "SSH from the operators"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "Kubernetes API from the operators"
    direction   = "in"
    protocol    = "tcp"
    port        = "6443"
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "HTTPS ingress"
    direction   = "in"
    protocol    = "tcp"
    port        = "443"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "HTTP ingress (redirects to HTTPS, ACME challenges)"
    direction   = "in"
    protocol    = "tcp"
    port        = "80"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "ICMP (path MTU discovery, ping)"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}
