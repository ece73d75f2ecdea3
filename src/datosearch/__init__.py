"""datosearch: search DaTo acceleration schedules for diffusers U-Nets."""
