# Storage that outlives the cluster: zone-redundant, private, TLS 1.2+.
resource "azurerm_storage_account" "main" {
  name                            = var.storage_account_name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  tags                            = var.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = 14
    }

    container_delete_retention_policy {
      days = 14
    }
  }

  share_properties {
    retention_policy {
      days = 14
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_container" "backups" {
  name                  = var.backup_container_name
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

resource "azurerm_storage_share" "acme" {
  name               = var.acme_share_name
  storage_account_id = azurerm_storage_account.main.id
  quota              = var.acme_share_quota_gb
  enabled_protocol   = "SMB"
}

resource "azurerm_storage_management_policy" "backups" {
  storage_account_id = azurerm_storage_account.main.id

  rule {
    name    = "expire-postgres-dumps"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${var.backup_container_name}/"]
    }

    actions {
      base_blob {
        tier_to_cool_after_days_since_modification_greater_than = 7
        delete_after_days_since_modification_greater_than       = var.backup_retention_days
      }

      version {
        delete_after_days_since_creation = var.backup_retention_days
      }
    }
  }
}
