# Everything of DESIGN.md section 1 on Azure: the cluster and its three node
# pools, the static public IP and DNS of the gateway, and the storage that
# outlives the cluster (database backups, shared ACME state).

locals {
  host = "${var.host_label}.${var.dns_zone_name}"
}

resource "azurerm_resource_group" "main" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

# The databases' managed disks are created here (StorageClass parameter
# resourceGroup), outside the AKS node resource group, so that they survive
# the deletion of the cluster and can be attached to a new one.
resource "azurerm_resource_group" "data" {
  name     = "${var.resource_group_name}-data"
  location = var.location
  tags     = var.tags
}

module "aks" {
  source = "./modules/aks"

  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  cluster_name        = var.cluster_name
  kubernetes_version  = var.kubernetes_version
  vnet_cidr           = var.vnet_cidr
  nodes_subnet_cidr   = var.nodes_subnet_cidr
  pod_cidr            = var.pod_cidr
  service_cidr        = var.service_cidr
  system_pool         = var.system_pool
  applications_pool   = var.applications_pool
  databases_pool      = var.databases_pool
  tags                = var.tags
}

module "edge" {
  source = "./modules/edge"

  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  public_ip_name      = var.public_ip_name
  dns_zone_name       = var.dns_zone_name
  host_label          = var.host_label
  tags                = var.tags
}

module "storage" {
  source = "./modules/storage"

  resource_group_name   = azurerm_resource_group.main.name
  location              = azurerm_resource_group.main.location
  storage_account_name  = var.storage_account_name
  backup_container_name = var.backup_container_name
  backup_retention_days = var.backup_retention_days
  acme_share_name       = var.acme_share_name
  tags                  = var.tags
}

resource "azurerm_container_registry" "main" {
  name                = var.acr_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "Standard"
  admin_enabled       = false
  tags                = var.tags
}

# The public IP lives in this resource group, not in the node resource
# group: the cluster identity needs Network Contributor here to attach it to
# the load balancer (annotation azure-load-balancer-resource-group).
resource "azurerm_role_assignment" "aks_network" {
  scope                = azurerm_resource_group.main.id
  role_definition_name = "Network Contributor"
  principal_id         = module.aks.cluster_identity_principal_id
}

# The Azure Disk CSI driver creates and attaches the database disks in the
# data resource group.
resource "azurerm_role_assignment" "aks_data_disks" {
  scope                = azurerm_resource_group.data.id
  role_definition_name = "Contributor"
  principal_id         = module.aks.cluster_identity_principal_id
}

# The Azure Files CSI driver mounts the Terraform-managed ACME share.
resource "azurerm_role_assignment" "aks_storage" {
  scope                = module.storage.storage_account_id
  role_definition_name = "Storage Account Contributor"
  principal_id         = module.aks.cluster_identity_principal_id
}

# Nodes pull the Switchyard image from the registry.
resource "azurerm_role_assignment" "aks_acr_pull" {
  scope                            = azurerm_container_registry.main.id
  role_definition_name             = "AcrPull"
  principal_id                     = module.aks.kubelet_identity_object_id
  skip_service_principal_aad_check = true
}
