# staging on Hetzner Cloud. The SSH public key and admin networks are set per deployment (-var),
# the API token comes from the hcloud_default connection.
environment  = "staging"
location     = "fsn1"
server_count = 1
agent_count  = 2
server_type  = "cpx31"
agent_type   = "cpx41"
network_cidr = "10.10.0.0/16"
