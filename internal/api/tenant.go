package api

import "github.com/danielgtaylor/huma/v2"

// foreignTenantMessage is the answer of every route to a tenant key that
// names another tenant's origin_tenant_id.
const foreignTenantMessage = "a tenant key can only name its own tenant (or leave origin_tenant_id out)"

// foreignTenant returns the 422 detail, located at location (e.g.
// "body.origin_tenant_id", "query.origin_tenant_id"), for a tenant key
// whose request names another tenant; nil when p may name tenant. Every
// route that takes origin_tenant_id answers alike: create, list, events.
func foreignTenant(p principal, location, tenant string) *huma.ErrorDetail {
	if p.admin || tenant == "" || tenant == p.tenantID {
		return nil
	}
	return &huma.ErrorDetail{Location: location, Message: foreignTenantMessage, Value: tenant}
}
