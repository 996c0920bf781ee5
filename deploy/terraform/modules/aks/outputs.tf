output "cluster_name" {
  description = "Name of the cluster."
  value       = azurerm_kubernetes_cluster.main.name
}

output "cluster_id" {
  description = "Resource ID of the cluster."
  value       = azurerm_kubernetes_cluster.main.id
}

output "node_resource_group" {
  description = "Resource group managed by AKS (nodes, managed disks)."
  value       = azurerm_kubernetes_cluster.main.node_resource_group
}

output "cluster_identity_principal_id" {
  description = "Principal ID of the cluster's system-assigned identity (load balancer, storage)."
  value       = azurerm_kubernetes_cluster.main.identity[0].principal_id
}

output "kubelet_identity_object_id" {
  description = "Object ID of the kubelet identity (image pulls)."
  value       = azurerm_kubernetes_cluster.main.kubelet_identity[0].object_id
}

output "oidc_issuer_url" {
  description = "OIDC issuer for workload identity federation."
  value       = azurerm_kubernetes_cluster.main.oidc_issuer_url
}
