# Only HTTP(S) is open to the world; SSH and the Kubernetes API only to the operators' networks;
# nodes talk to each other freely inside the security group (etcd, kubelet, WireGuard).
resource "aws_security_group" "nodes" {
  name        = "${var.environment}-platform-nodes"
  description = "adplatform ${var.environment} K3s nodes"
  vpc_id      = aws_vpc.cluster.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each          = { for pair in setproduct(var.admin_cidrs, [22, 6443]) : "${pair[0]}:${pair[1]}" => pair }
  security_group_id = aws_security_group.nodes.id
  description       = "SSH and Kubernetes API from the operators"
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
}

resource "aws_vpc_security_group_ingress_rule" "web" {
  for_each          = toset(["80", "443"])
  security_group_id = aws_security_group.nodes.id
  description       = "HTTP(S) ingress"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_security_group_ingress_rule" "cluster" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Node to node"
  referenced_security_group_id = aws_security_group.nodes.id
  ip_protocol                  = "-1"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.nodes.id
  description       = "Outbound (images, charts, OS updates)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}
