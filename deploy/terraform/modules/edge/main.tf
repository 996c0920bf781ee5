# Static, zone-redundant public IP of the gateway's load balancer.
resource "azurerm_public_ip" "ingress" {
  name                = var.public_ip_name
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "Standard"
  sku_tier            = "Regional"
  allocation_method   = "Static"
  ip_version          = "IPv4"
  zones               = ["1", "2", "3"]
  tags                = var.tags

  lifecycle {
    # The DNS record and the ACME certificates point here.
    prevent_destroy = true
  }
}

resource "azurerm_dns_zone" "main" {
  name                = var.dns_zone_name
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_dns_a_record" "host" {
  name                = var.host_label
  zone_name           = azurerm_dns_zone.main.name
  resource_group_name = var.resource_group_name
  ttl                 = var.record_ttl
  records             = [azurerm_public_ip.ingress.ip_address]
  tags                = var.tags
}

# Let's Encrypt only: no other CA may issue for the zone.
resource "azurerm_dns_caa_record" "apex" {
  name                = "@"
  zone_name           = azurerm_dns_zone.main.name
  resource_group_name = var.resource_group_name
  ttl                 = 3600

  record {
    flags = 0
    tag   = "issue"
    value = "letsencrypt.org"
  }
}
