resource "azurerm_virtual_network" "main" {
  name                = "${var.cluster_name}-vnet"
  resource_group_name = var.resource_group_name
  location            = var.location
  address_space       = [var.vnet_cidr]
  tags                = var.tags
}

resource "azurerm_subnet" "nodes" {
  name                 = "nodes"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [var.nodes_subnet_cidr]
}

resource "azurerm_kubernetes_cluster" "main" {
  name                      = var.cluster_name
  resource_group_name       = var.resource_group_name
  location                  = var.location
  dns_prefix                = var.cluster_name
  kubernetes_version        = var.kubernetes_version
  sku_tier                  = "Standard"
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"
  oidc_issuer_enabled       = true
  workload_identity_enabled = true
  tags                      = var.tags

  # Only critical add-ons and the Switchyard gateway run here.
  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_pool.vm_size
    zones                        = var.zones
    auto_scaling_enabled         = true
    min_count                    = var.system_pool.min_count
    max_count                    = var.system_pool.max_count
    only_critical_addons_enabled = true
    vnet_subnet_id               = azurerm_subnet.nodes.id
    os_disk_type                 = "Managed"
    max_pods                     = 110
    temporary_name_for_rotation  = "systemtmp"

    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  # Azure CNI (overlay mode) with Calico: NetworkPolicies are enforced.
  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_policy      = "calico"
    load_balancer_sku   = "standard"
    outbound_type       = "loadBalancer"
    pod_cidr            = var.pod_cidr
    service_cidr        = var.service_cidr
    dns_service_ip      = cidrhost(var.service_cidr, 10)
  }

  storage_profile {
    disk_driver_enabled = true
    file_driver_enabled = true
  }

  # Azure Key Vault provider for the Secrets Store CSI driver: the
  # alternative to kustomize-generated Secrets (deploy/README.md).
  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count]
  }
}

# Postfacto 4.1.0 and 4.2.0.
resource "azurerm_kubernetes_cluster_node_pool" "applications" {
  name                  = "applications"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.main.id
  mode                  = "User"
  vm_size               = var.applications_pool.vm_size
  zones                 = var.zones
  auto_scaling_enabled  = true
  min_count             = var.applications_pool.min_count
  max_count             = var.applications_pool.max_count
  vnet_subnet_id        = azurerm_subnet.nodes.id
  os_disk_type          = "Managed"
  node_labels = {
    "workload" = "applications"
  }
  tags = var.tags

  upgrade_settings {
    max_surge = "33%"
  }

  lifecycle {
    ignore_changes = [node_count]
  }
}

# PostgreSQL and Redis: memory-optimised VMs with premium storage, tainted
# so that nothing else lands here.
resource "azurerm_kubernetes_cluster_node_pool" "databases" {
  name                  = "databases"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.main.id
  mode                  = "User"
  vm_size               = var.databases_pool.vm_size
  zones                 = var.zones
  auto_scaling_enabled  = true
  min_count             = var.databases_pool.min_count
  max_count             = var.databases_pool.max_count
  vnet_subnet_id        = azurerm_subnet.nodes.id
  os_disk_type          = "Managed"
  node_labels = {
    "workload" = "databases"
  }
  node_taints = ["workload=databases:NoSchedule"]
  tags        = var.tags

  upgrade_settings {
    max_surge = "1"
  }

  lifecycle {
    ignore_changes = [node_count]
  }
}
