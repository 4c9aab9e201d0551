# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/hetznercloud/hcloud" {
  version     = "1.57.0"
  constraints = "~> 1.57"
  hashes = [
    "h1:fV4X5e4ZasoMzEdIYSXEeXemqZfygxIdlJbYCsf+mZU=",
  ]
}
