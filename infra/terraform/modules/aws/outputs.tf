output "nodes" {
  description = "Every node: name, K3s role, public and private IPv4 address."
  value = [for name, node in aws_instance.node : {
    name         = name
    role         = local.nodes[name].role
    public_ipv4  = node.public_ip
    private_ipv4 = node.private_ip
  }]
}

output "network_id" {
  value = aws_vpc.cluster.id
}
