variable "resource_group_name" {
  description = "Resource group of the storage account."
  type        = string
}

variable "location" {
  description = "Azure region of the storage account."
  type        = string
}

variable "storage_account_name" {
  description = "Globally unique storage account name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "storage_account_name must be 3-24 lower-case letters and digits."
  }
}

variable "backup_container_name" {
  description = "Blob container for PostgreSQL dumps."
  type        = string
}

variable "backup_retention_days" {
  description = "Days before a dump is deleted."
  type        = number
}

variable "acme_share_name" {
  description = "Azure Files share for the gateway's ACME storage."
  type        = string
}

variable "acme_share_quota_gb" {
  description = "Quota of the ACME share in GiB."
  type        = number
  default     = 5
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
