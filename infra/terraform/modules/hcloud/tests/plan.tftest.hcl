# Plan-only tests with a mocked provider: no account, no API call. The provider's schema still
# comes from the real provider binary (built from the Go module proxy by `make setup`).
# Hetzner Cloud ids are numbers; the mocks' random strings would not pass as references.
mock_provider "hcloud" {
  mock_resource "hcloud_network" {
    defaults = { id = "1001" }
  }
  mock_resource "hcloud_firewall" {
    defaults = { id = "1002" }
  }
  mock_resource "hcloud_ssh_key" {
    defaults = { id = "1003" }
  }
  mock_resource "hcloud_placement_group" {
    defaults = { id = "1004" }
  }
}

variables {
  environment    = "staging"
  location       = "fsn1"
  server_count   = 1
  agent_count    = 2
  server_type    = "cpx31"
  agent_type     = "cpx41"
  admin_cidrs    = ["203.0.113.0/24"]
  ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanOnlyTestKey platform@test"
}

run "staging_layout" {
  command = plan

  assert {
    condition     = length(hcloud_server.node) == 3
    error_message = "staging has one server and two agents"
  }

  assert {
    condition     = alltrue([for name, node in hcloud_server.node : startswith(name, "staging-") && node.labels.environment == "staging"])
    error_message = "every node is named and labelled with its environment"
  }

  assert {
    condition     = toset([for node in output.nodes : node.private_ipv4]) == toset(["10.10.1.10", "10.10.1.100", "10.10.1.101"])
    error_message = "servers and agents get fixed private addresses"
  }
}

run "ssh_and_api_only_from_admin_networks" {
  command = plan

  assert {
    condition = alltrue([
      for rule in hcloud_firewall.nodes.rule : !contains(rule.source_ips, "0.0.0.0/0") if contains(["22", "6443"], coalesce(rule.port, "-"))
    ])
    error_message = "SSH and the Kubernetes API must not be open to the world"
  }
}

run "an_etcd_quorum_needs_an_odd_number_of_servers" {
  command = plan

  variables {
    server_count = 2
  }

  expect_failures = [var.server_count]
}

run "the_internet_is_no_admin_network" {
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "a_spread_group_never_holds_more_than_ten_servers" {
  command = plan

  variables {
    agent_count = 12
  }

  assert {
    condition     = toset(keys(hcloud_placement_group.spread)) == toset(["servers", "agents", "agents-2"])
    error_message = "twelve agents fill one group of ten and start a second"
  }

  assert {
    condition     = [for node in output.nodes : node.name if node.spread_group == "agents-2"] == ["staging-agent-11", "staging-agent-12"]
    error_message = "the eleventh and twelfth agents go to the second group"
  }
}

run "the_nodes_say_which_login_reaches_them" {
  command = plan

  assert {
    condition     = alltrue([for node in output.nodes : node.ssh_user == "root"])
    error_message = "Hetzner's images take the provisioning key as root"
  }
}
