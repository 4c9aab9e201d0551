output "nodes" {
  description = "Every node: name, K3s role, public and private IPv4 address, SSH login, placement group."
  value = [for name, node in hcloud_server.node : {
    name         = name
    role         = local.nodes[name].role
    public_ipv4  = node.ipv4_address
    private_ipv4 = cidrhost(hcloud_network_subnet.nodes.ip_range, local.nodes[name].host)
    ssh_user     = "root" # Hetzner's images log the SSH key in as root
    spread_group = local.nodes[name].group
  }]
}

output "network_id" {
  value = hcloud_network.cluster.id
}
