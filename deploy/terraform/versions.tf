terraform {
  required_version = ">= 1.6.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.14"
    }
  }
}

provider "azurerm" {
  features {
    resource_group {
      # The data resource group holds the databases' Retain disks: never let
      # `terraform destroy` delete a resource group that still has resources.
      prevent_deletion_if_contains_resources = true
    }
  }
  subscription_id = var.subscription_id
}
