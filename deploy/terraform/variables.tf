variable "subscription_id" {
  description = "Azure subscription ID to deploy into (not a secret; also read from ARM_SUBSCRIPTION_ID when null)."
  type        = string
  default     = null
}

variable "location" {
  description = "Azure region; it must offer availability zones 1, 2 and 3 and zone-redundant (ZRS) disks."
  type        = string
  default     = "westeurope"
}

variable "resource_group_name" {
  description = "Name of the resource group holding the cluster, public IP, DNS zone and storage."
  type        = string
  default     = "switchyard-prod"
}

variable "cluster_name" {
  description = "Name of the AKS cluster (also the DNS prefix of its API server)."
  type        = string
  default     = "switchyard-prod"
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (major.minor); null takes the region's default."
  type        = string
  default     = null
}

variable "dns_zone_name" {
  description = "Public DNS zone created in Azure DNS; delegate it from the parent zone (see the name_servers output)."
  type        = string
  default     = "example.org"
}

variable "host_label" {
  description = "Record name of the public host inside dns_zone_name (\"retro\" gives retro.example.org)."
  type        = string
  default     = "retro"
}

variable "public_ip_name" {
  description = "Name of the static public IP that the switchyard LoadBalancer Service takes (azure-pip-name annotation)."
  type        = string
  default     = "switchyard-ingress"
}

variable "storage_account_name" {
  description = "Globally unique name (3-24 lower-case letters and digits) of the storage account for backups and ACME storage."
  type        = string
}

variable "acr_name" {
  description = "Globally unique name (5-50 letters and digits) of the container registry for the Switchyard image."
  type        = string
}

variable "backup_container_name" {
  description = "Blob container receiving the PostgreSQL dumps."
  type        = string
  default     = "postgres-backups"
}

variable "backup_retention_days" {
  description = "Days a PostgreSQL dump is kept in blob storage before the lifecycle policy deletes it."
  type        = number
  default     = 35
}

variable "acme_share_name" {
  description = "Azure Files share mounted by every Switchyard replica at /var/lib/switchyard."
  type        = string
  default     = "switchyard-acme"
}

variable "vnet_cidr" {
  description = "Address space of the cluster virtual network."
  type        = string
  default     = "10.42.0.0/16"
}

variable "nodes_subnet_cidr" {
  description = "Subnet of the cluster nodes (pods get overlay addresses from pod_cidr)."
  type        = string
  default     = "10.42.0.0/20"
}

variable "pod_cidr" {
  description = "Pod address range of the Azure CNI overlay."
  type        = string
  default     = "10.244.0.0/16"
}

variable "service_cidr" {
  description = "Kubernetes Service address range; must not overlap vnet_cidr."
  type        = string
  default     = "10.0.0.0/16"
}

variable "system_pool" {
  description = "System node pool (CriticalAddonsOnly; runs the Switchyard gateway): VM size and autoscaler bounds."
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  default = {
    vm_size   = "Standard_D4s_v5"
    min_count = 3
    max_count = 6
  }
}

variable "applications_pool" {
  description = "User node pool \"applications\" (Postfacto): VM size and autoscaler bounds."
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  default = {
    vm_size   = "Standard_D4s_v5"
    min_count = 3
    max_count = 9
  }
}

variable "databases_pool" {
  description = "User node pool \"databases\" (PostgreSQL, Redis; tainted): memory-optimised, premium-storage VM size and autoscaler bounds."
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  default = {
    vm_size   = "Standard_E4s_v5"
    min_count = 3
    max_count = 6
  }
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default = {
    project = "switchyard"
  }
}
