# Plan-only tests with a mocked provider: no account, no API call. The provider's schema still
# comes from the real provider binary (built from the Go module proxy by `make setup`).
mock_provider "aws" {
  mock_data "aws_ami" {
    defaults = {
      id = "ami-0123456789abcdef0"
    }
  }
}

variables {
  environment       = "staging"
  availability_zone = "eu-central-1a"
  server_count      = 1
  agent_count       = 2
  server_type       = "m7i.xlarge"
  agent_type        = "m7i.2xlarge"
  admin_cidrs       = ["203.0.113.0/24"]
  ssh_public_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanOnlyTestKey platform@test"
}

run "staging_layout" {
  command = plan

  assert {
    condition     = length(aws_instance.node) == 3
    error_message = "staging has one server and two agents"
  }

  assert {
    condition     = alltrue([for name, node in aws_instance.node : startswith(name, "staging-") && node.tags.environment == "staging"])
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
    condition     = alltrue([for rule in aws_vpc_security_group_ingress_rule.admin : rule.cidr_ipv4 == "203.0.113.0/24"])
    error_message = "SSH and the Kubernetes API are open only to the admin networks"
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.web)) == toset(["80", "443"])
    error_message = "only HTTP(S) is open to the world"
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

run "a_spread_group_never_runs_more_than_seven_instances" {
  command = plan

  variables {
    server_count = 3
    agent_count  = 9
  }

  assert {
    condition     = toset(keys(aws_placement_group.spread)) == toset(["servers", "agents", "agents-2"])
    error_message = "nine agents fill one group of seven and start a second"
  }

  assert {
    condition     = [for node in output.nodes : node.name if node.spread_group == "agents-2"] == ["staging-agent-8", "staging-agent-9"]
    error_message = "the eighth and ninth agents go to the second group"
  }
}

run "the_nodes_say_which_login_reaches_them" {
  command = plan

  assert {
    condition     = alltrue([for node in output.nodes : node.ssh_user == "admin"])
    error_message = "Debian's AMIs take the key pair as admin, not root"
  }
}

run "the_ebs_driver_works_from_the_instance_profile" {
  command = plan

  assert {
    condition     = alltrue([for node in aws_instance.node : node.iam_instance_profile == "staging-platform-node" && node.metadata_options[0].http_put_response_hop_limit == 2])
    error_message = "every node carries the EBS CSI instance profile, and IMDSv2 answers pods"
  }
}
