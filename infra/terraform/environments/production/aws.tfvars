# production on AWS. The SSH public key and admin networks are set per deployment (-var), the
# credentials come from the aws_default connection.
environment       = "production"
region            = "eu-central-1"
availability_zone = "eu-central-1a"
server_count      = 3
agent_count       = 5
server_type       = "m7i.2xlarge"
agent_type        = "r7i.4xlarge"
network_cidr      = "10.20.0.0/16"
