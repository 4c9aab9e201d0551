locals {
  tags = {
    environment = var.environment
    managed-by  = "adplatform"
  }
  nodes = merge(
    { for i in range(var.server_count) : format("%s-server-%d", var.environment, i + 1) => {
      role = "server", type = var.server_type, host = 10 + i
    } },
    { for i in range(var.agent_count) : format("%s-agent-%d", var.environment, i + 1) => {
      role = "agent", type = var.agent_type, host = 100 + i
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
  name     = "${var.environment}-platform"
  strategy = "spread"
  tags     = local.tags
}

resource "aws_instance" "node" {
  for_each               = local.nodes
  ami                    = data.aws_ami.debian.id
  instance_type          = each.value.type
  subnet_id              = aws_subnet.nodes.id
  private_ip             = cidrhost(aws_subnet.nodes.cidr_block, each.value.host)
  vpc_security_group_ids = [aws_security_group.nodes.id]
  key_name               = aws_key_pair.provisioning.key_name
  placement_group        = aws_placement_group.spread.id
  tags                   = merge(local.tags, { Name = each.key, role = each.value.role })

  metadata_options {
    http_tokens = "required"
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
