locals {
  tags = {
    environment = var.environment
    managed-by  = "adplatform"
  }
  # A spread placement group runs at most 7 instances per availability zone, so each role fills
  # groups of 7 in turn (production's 3 servers and 5 agents would not fit one group).
  group_size = 7
  nodes = merge(
    { for i in range(var.server_count) : format("%s-server-%d", var.environment, i + 1) => {
      role = "server", type = var.server_type, host = 10 + i, group = i < local.group_size ? "servers" : format("servers-%d", floor(i / local.group_size) + 1)
    } },
    { for i in range(var.agent_count) : format("%s-agent-%d", var.environment, i + 1) => {
      role = "agent", type = var.agent_type, host = 100 + i, group = i < local.group_size ? "agents" : format("agents-%d", floor(i / local.group_size) + 1)
    } },
  )
}

data "aws_ami" "debian" {
  most_recent = true
  owners      = [var.ami_owner]
  filter {
    name   = "name"
    values = [var.ami_name]
  }
}

resource "aws_key_pair" "provisioning" {
  key_name   = "${var.environment}-provisioning"
  public_key = var.ssh_public_key
  tags       = local.tags
}

resource "aws_placement_group" "spread" {
  for_each = toset([for node in local.nodes : node.group])
  name     = "${var.environment}-${each.key}"
  strategy = "spread"
  tags     = local.tags
}

# The EBS CSI driver (helm_values/aws-ebs-csi-driver) creates and attaches volumes as the nodes'
# instance profile: no access key stored in the cluster.
resource "aws_iam_role" "node" {
  name = "${var.environment}-platform-node"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.environment}-platform-node"
  role = aws_iam_role.node.name
  tags = local.tags
}

resource "aws_instance" "node" {
  for_each               = local.nodes
  ami                    = data.aws_ami.debian.id
  instance_type          = each.value.type
  subnet_id              = aws_subnet.nodes.id
  private_ip             = cidrhost(aws_subnet.nodes.cidr_block, each.value.host)
  vpc_security_group_ids = [aws_security_group.nodes.id]
  key_name               = aws_key_pair.provisioning.key_name
  placement_group        = aws_placement_group.spread[each.value.group].id
  iam_instance_profile   = aws_iam_instance_profile.node.name
  tags                   = merge(local.tags, { Name = each.key, role = each.value.role })

  metadata_options {
    http_tokens = "required"
    # The EBS CSI controller asks for the instance profile's credentials from a pod, one hop
    # further than the node; with the default limit of 1 its IMDSv2 token never arrives.
    http_put_response_hop_limit = 2
  }

  root_block_device {
    volume_size = var.root_volume_gb
    volume_type = "gp3"
    encrypted   = true
  }

  # Rebuilding a node is a decision for a person, not a side effect of a new image.
  lifecycle {
    ignore_changes = [ami]
  }
}
