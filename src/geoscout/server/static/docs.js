// Swagger UI for /docs, loaded from this server (no CDN; the page works offline).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
