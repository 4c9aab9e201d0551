output "nodes" {
  description = "Every node: name, K3s role, public and private IPv4 address, SSH login, placement group."
  value = [for name, node in aws_instance.node : {
    name         = name
    role         = local.nodes[name].role
    public_ipv4  = node.public_ip
    private_ipv4 = node.private_ip
    ssh_user     = var.ssh_user
    spread_group = local.nodes[name].group
  }]
}

output "network_id" {
  value = aws_vpc.cluster.id
}
