variable "environment" {
  description = "Environment name; prefixes every resource and labels it."
  type        = string
  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production (local runs on existing hosts)."
  }
}

variable "availability_zone" {
  description = "Availability zone of every node (one zone keeps etcd latency low; e.g. eu-central-1a)."
  type        = string
}

variable "server_count" {
  description = "K3s servers (control plane with embedded etcd): 1, or 3 or more for HA."
  type        = number
  validation {
    condition     = var.server_count == 1 || (var.server_count >= 3 && var.server_count % 2 == 1)
    error_message = "server_count must be 1 or an odd number >= 3 (etcd quorum)."
  }
}

variable "agent_count" {
  description = "K3s agents (workers)."
  type        = number
  validation {
    condition     = var.agent_count >= 0
    error_message = "agent_count cannot be negative."
  }
}

variable "server_type" {
  description = "EC2 instance type of the K3s servers."
  type        = string
}

variable "agent_type" {
  description = "EC2 instance type of the K3s agents."
  type        = string
}

variable "ami_owner" {
  description = "Owner of the operating system image (Debian's account)."
  type        = string
  default     = "136693071363"
}

variable "ami_name" {
  description = "Name pattern of the operating system image."
  type        = string
  default     = "debian-12-amd64-*"
}

variable "ssh_user" {
  description = "The login the image gives the key pair (Debian's AMIs: admin; root logins are off)."
  type        = string
  default     = "admin"
}

variable "root_volume_gb" {
  description = "Size of each node's encrypted root volume."
  type        = number
  default     = 100
}

variable "network_cidr" {
  description = "The cluster VPC."
  type        = string
  default     = "10.10.0.0/16"
}

variable "admin_cidrs" {
  description = "Networks allowed to reach SSH (22) and the Kubernetes API (6443)."
  type        = list(string)
  validation {
    condition     = length(var.admin_cidrs) > 0 && !contains(var.admin_cidrs, "0.0.0.0/0") && !contains(var.admin_cidrs, "::/0")
    error_message = "admin_cidrs must list the operators' networks; the whole internet is not an admin network."
  }
}

variable "ssh_public_key" {
  description = "Public key installed for the provisioning user (the private key stays in the ssh connection)."
  type        = string
}
