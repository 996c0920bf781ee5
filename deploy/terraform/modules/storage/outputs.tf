output "storage_account_id" {
  description = "Resource ID of the storage account."
  value       = azurerm_storage_account.main.id
}

output "storage_account_name" {
  description = "Name of the storage account."
  value       = azurerm_storage_account.main.name
}

output "primary_access_key" {
  description = "Primary access key (for the backup CronJob)."
  value       = azurerm_storage_account.main.primary_access_key
  sensitive   = true
}

output "backup_container_name" {
  description = "Blob container of the PostgreSQL dumps."
  value       = azurerm_storage_container.backups.name
}

output "acme_share_name" {
  description = "Azure Files share of the ACME storage."
  value       = azurerm_storage_share.acme.name
}
