locals {
  labels = {
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

resource "hcloud_ssh_key" "provisioning" {
  name       = "${var.environment}-provisioning"
  public_key = var.ssh_public_key
  labels     = local.labels
}

# Servers of one role never share a physical host.
resource "hcloud_placement_group" "spread" {
  for_each = toset(["server", "agent"])
  name     = "${var.environment}-${each.key}s"
  type     = "spread"
  labels   = local.labels
}

resource "hcloud_server" "node" {
  for_each           = local.nodes
  name               = each.key
  server_type        = each.value.type
  image              = var.image
  location           = var.location
  ssh_keys           = [hcloud_ssh_key.provisioning.id]
  firewall_ids       = [hcloud_firewall.nodes.id]
  placement_group_id = hcloud_placement_group.spread[each.value.role].id
  labels             = merge(local.labels, { role = each.value.role })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.cluster.id
    ip         = cidrhost(hcloud_network_subnet.nodes.ip_range, each.value.host)
  }

  # Rebuilding a node is a decision for a person, not a side effect of an image update.
  lifecycle {
    ignore_changes = [image, ssh_keys]
  }
}
