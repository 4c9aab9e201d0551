resource "hcloud_network" "cluster" {
  name     = "${var.environment}-platform"
  ip_range = var.network_cidr
  labels   = local.labels
}

resource "hcloud_network_subnet" "nodes" {
  network_id   = hcloud_network.cluster.id
  type         = "cloud"
  network_zone = var.network_zone
  ip_range     = cidrsubnet(var.network_cidr, 8, 1)
}
