"""The HTTP routes, one ``APIRouter`` per module; ``service.app`` includes them."""
