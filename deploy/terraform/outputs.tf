output "kube_config_command" {
  description = "Fetches kubectl credentials for the cluster."
  value       = "az aks get-credentials --resource-group ${azurerm_resource_group.main.name} --name ${module.aks.cluster_name} --overwrite-existing"
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = module.aks.cluster_name
}

output "data_resource_group" {
  description = "Resource group of the databases' managed disks (kept when the cluster goes)."
  value       = azurerm_resource_group.data.name
}

output "node_resource_group" {
  description = "Resource group managed by AKS (nodes, load balancer)."
  value       = module.aks.node_resource_group
}

output "public_ip" {
  description = "Static public IP of the gateway's load balancer."
  value       = module.edge.public_ip_address
}

output "host" {
  description = "Public host name served by Switchyard (A record to public_ip)."
  value       = local.host
}

output "name_servers" {
  description = "Azure DNS name servers of the zone: delegate the zone to them (NS records at the parent)."
  value       = module.edge.name_servers
}

output "acr_login_server" {
  description = "Registry for the Switchyard image (az acr build -r <name> -t switchyard:<tag> .)."
  value       = azurerm_container_registry.main.login_server
}

output "storage_account_name" {
  description = "Storage account holding the backup container and the ACME share."
  value       = module.storage.storage_account_name
}

output "backup_storage_key" {
  description = "Access key used by the backup CronJob (read by deploy/scripts/make-secrets.sh)."
  value       = module.storage.primary_access_key
  sensitive   = true
}

output "azure_env" {
  description = "Contents of deploy/k8s/overlays/aks/azure.env: terraform output -raw azure_env > ../k8s/overlays/aks/azure.env"
  value       = <<-EOT
    RESOURCE_GROUP=${azurerm_resource_group.main.name}
    DISK_RESOURCE_GROUP=${azurerm_resource_group.data.name}
    PUBLIC_IP_NAME=${module.edge.public_ip_name}
    STORAGE_ACCOUNT=${module.storage.storage_account_name}
    ACME_SHARE=${module.storage.acme_share_name}
    BACKUP_CONTAINER=${module.storage.backup_container_name}
  EOT
}
