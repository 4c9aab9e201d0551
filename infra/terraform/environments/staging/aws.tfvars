# staging on AWS. The SSH public key and admin networks are set per deployment (-var), the
# credentials come from the aws_default connection.
environment       = "staging"
region            = "eu-central-1"
availability_zone = "eu-central-1a"
server_count      = 1
agent_count       = 2
server_type       = "m7i.xlarge"
agent_type        = "m7i.2xlarge"
network_cidr      = "10.20.0.0/16"
