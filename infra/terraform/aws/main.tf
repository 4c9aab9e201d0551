# The platform's servers on aws: one root per cloud, one state per environment (the
# provisioning DAG passes -backend-config and -var-file=../environments/<env>/aws.tfvars).
terraform {
  required_version = ">= 1.8"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
  backend "local" {}
}

provider "aws" {
  region = var.region
  # Credentials come from the environment (AWS_ACCESS_KEY_ID, ...), set from the aws_default connection.
  default_tags {
    tags = { project = "adplatform" }
  }
}

module "cluster" {
  source            = "../modules/aws"
  environment       = var.environment
  availability_zone = var.availability_zone
  server_count      = var.server_count
  agent_count       = var.agent_count
  server_type       = var.server_type
  agent_type        = var.agent_type
  network_cidr      = var.network_cidr
  admin_cidrs       = var.admin_cidrs
  ssh_public_key    = var.ssh_public_key
}

variable "environment" {
  type = string
}

variable "region" {
  type = string
}

variable "availability_zone" {
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
