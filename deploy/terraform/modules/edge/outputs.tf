output "public_ip_address" {
  description = "The static public IP address."
  value       = azurerm_public_ip.ingress.ip_address
}

output "public_ip_name" {
  description = "Name of the static public IP."
  value       = azurerm_public_ip.ingress.name
}

output "name_servers" {
  description = "Name servers of the DNS zone."
  value       = azurerm_dns_zone.main.name_servers
}

output "fqdn" {
  description = "Fully qualified name of the A record."
  value       = trimsuffix(azurerm_dns_a_record.host.fqdn, ".")
}
