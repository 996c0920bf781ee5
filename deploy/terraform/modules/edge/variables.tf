variable "resource_group_name" {
  description = "Resource group of the public IP and the DNS zone."
  type        = string
}

variable "location" {
  description = "Azure region of the public IP."
  type        = string
}

variable "public_ip_name" {
  description = "Name of the static public IP."
  type        = string
}

variable "dns_zone_name" {
  description = "Public DNS zone to create."
  type        = string
}

variable "host_label" {
  description = "Record name of the public host inside the zone."
  type        = string
}

variable "record_ttl" {
  description = "TTL in seconds of the A record."
  type        = number
  default     = 300
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
