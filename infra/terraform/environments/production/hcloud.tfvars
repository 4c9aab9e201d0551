# production on Hetzner Cloud. The SSH public key and admin networks are set per deployment (-var),
# the API token comes from the hcloud_default connection.
environment  = "production"
location     = "fsn1"
server_count = 3
agent_count  = 5
server_type  = "ccx33"
agent_type   = "ccx43"
network_cidr = "10.10.0.0/16"
