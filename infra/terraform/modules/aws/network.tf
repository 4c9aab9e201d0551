resource "aws_vpc" "cluster" {
  cidr_block           = var.network_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = "${var.environment}-platform" })
}

resource "aws_subnet" "nodes" {
  vpc_id                  = aws_vpc.cluster.id
  cidr_block              = cidrsubnet(var.network_cidr, 8, 1)
  availability_zone       = var.availability_zone
  map_public_ip_on_launch = true
  tags                    = merge(local.tags, { Name = "${var.environment}-nodes" })
}

resource "aws_internet_gateway" "cluster" {
  vpc_id = aws_vpc.cluster.id
  tags   = local.tags
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.cluster.id
  tags   = local.tags

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.cluster.id
  }
}

resource "aws_route_table_association" "nodes" {
  subnet_id      = aws_subnet.nodes.id
  route_table_id = aws_route_table.public.id
}
