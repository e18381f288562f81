"""bff: a GraphQL backend-for-frontend for mobile apps, with live subscriptions."""
