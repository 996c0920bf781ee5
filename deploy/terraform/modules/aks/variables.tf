variable "resource_group_name" {
  description = "Resource group of the cluster and its virtual network."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "cluster_name" {
  description = "Name and DNS prefix of the cluster."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes version; null for the region default."
  type        = string
  default     = null
}

variable "vnet_cidr" {
  description = "Address space of the virtual network."
  type        = string
}

variable "nodes_subnet_cidr" {
  description = "Subnet of the nodes."
  type        = string
}

variable "pod_cidr" {
  description = "Pod range of the Azure CNI overlay."
  type        = string
}

variable "service_cidr" {
  description = "Kubernetes Service range."
  type        = string
}

variable "zones" {
  description = "Availability zones of every node pool."
  type        = list(string)
  default     = ["1", "2", "3"]
}

variable "system_pool" {
  description = "System pool VM size and autoscaler bounds."
  type        = object({ vm_size = string, min_count = number, max_count = number })
}

variable "applications_pool" {
  description = "Applications pool VM size and autoscaler bounds."
  type        = object({ vm_size = string, min_count = number, max_count = number })
}

variable "databases_pool" {
  description = "Databases pool VM size and autoscaler bounds."
  type        = object({ vm_size = string, min_count = number, max_count = number })
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
