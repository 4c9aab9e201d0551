# The platform's servers on hcloud: one root per cloud, one state per environment (the
# provisioning DAG passes -backend-config and -var-file=../environments/<env>/hcloud.tfvars).
terraform {
  required_version = ">= 1.8"
  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.57"
    }
  }
  backend "local" {}
}

provider "hcloud" {
  # The token comes from the environment (HCLOUD_TOKEN), set from the hcloud_default connection.
}

module "cluster" {
  source         = "../modules/hcloud"
  environment    = var.environment
  location       = var.location
  server_count   = var.server_count
  agent_count    = var.agent_count
  server_type    = var.server_type
  agent_type     = var.agent_type
  network_cidr   = var.network_cidr
  admin_cidrs    = var.admin_cidrs
  ssh_public_key = var.ssh_public_key
}

variable "environment" {
  type = string
}

variable "location" {
  type = string
}

variable "server_count" {
  type = number
}

variable "agent_count" {
  type = number
}

variable "server_type" {
  type = string
}

variable "agent_type" {
  type = string
}

variable "network_cidr" {
  type    = string
  default = "10.10.0.0/16"
}

variable "admin_cidrs" {
  type = list(string)
}

variable "ssh_public_key" {
  type = string
}

output "nodes" {
  value = module.cluster.nodes
}
