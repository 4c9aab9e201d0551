"""Platform provisioning: the manifest, values policy, Terraform/OpenTofu, Ansible over SSH, Helm
waves with health gates, upgrades with rollback and drift checks. The DAGs in dags/platform_*.py
only order these steps."""
