# Copy to terraform.tfvars (ignored by git) and adjust. No secrets here:
# credentials come from `az login` or ARM_* environment variables.
location             = "westeurope"
resource_group_name  = "switchyard-prod"
cluster_name         = "switchyard-prod"
dns_zone_name        = "example.org"
host_label           = "retro"
public_ip_name       = "switchyard-ingress"
storage_account_name = "switchyardprodstate"
acr_name             = "switchyardacr"

databases_pool = {
  vm_size   = "Standard_E4s_v5"
  min_count = 3
  max_count = 6
}

tags = {
  project     = "switchyard"
  environment = "prod"
}
