locals {
  labels = {
    environment = var.environment
    managed-by  = "adplatform"
  }
  # A spread placement group holds at most 10 servers, so each role fills groups of 10 in turn.
  group_size = 10
  nodes = merge(
    { for i in range(var.server_count) : format("%s-server-%d", var.environment, i + 1) => {
      role = "server", type = var.server_type, host = 10 + i, group = i < local.group_size ? "servers" : format("servers-%d", floor(i / local.group_size) + 1)
    } },
    { for i in range(var.agent_count) : format("%s-agent-%d", var.environment, i + 1) => {
      role = "agent", type = var.agent_type, host = 100 + i, group = i < local.group_size ? "agents" : format("agents-%d", floor(i / local.group_size) + 1)
    } },
  )
}

resource "hcloud_ssh_key" "provisioning" {
  name       = "${var.environment}-provisioning"
  public_key = var.ssh_public_key
  labels     = local.labels
}

# Servers of one role never share a physical host (up to a group's 10).
resource "hcloud_placement_group" "spread" {
  for_each = toset([for node in local.nodes : node.group])
  name     = "${var.environment}-${each.key}"
  type     = "spread"
  labels   = local.labels
}

# The groups were keyed by role before a role could need more than one; same names, no change.
moved {
  from = hcloud_placement_group.spread["server"]
  to   = hcloud_placement_group.spread["servers"]
}

moved {
  from = hcloud_placement_group.spread["agent"]
  to   = hcloud_placement_group.spread["agents"]
}

resource "hcloud_server" "node" {
  for_each           = local.nodes
  name               = each.key
  server_type        = each.value.type
  image              = var.image
  location           = var.location
  ssh_keys           = [hcloud_ssh_key.provisioning.id]
  firewall_ids       = [hcloud_firewall.nodes.id]
  placement_group_id = hcloud_placement_group.spread[each.value.group].id
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
